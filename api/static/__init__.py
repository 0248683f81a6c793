"""The web app's files (index.html, app.css, app.js), served by `api.web`.

A package only so that setuptools ships the files in the wheel (package-data *.html, *.css, *.js).
"""
