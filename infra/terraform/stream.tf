# The event log. Partition key = the user whose followers or posts change (DESIGN.md).
resource "aws_kinesis_stream" "events" {
  name             = local.stream_name
  shard_count      = var.stream_mode == "PROVISIONED" ? var.shard_count : null
  retention_period = 168 # a week of replay from the stream itself; older events come from the archive
  encryption_type  = "KMS"
  kms_key_id       = aws_kms_key.main.arn

  shard_level_metrics = ["IncomingRecords", "IteratorAgeMilliseconds"]

  stream_mode_details {
    stream_mode = var.stream_mode
  }
}

# The archive: Firehose reads the stream and writes it to S3, for replay beyond the retention.
resource "aws_s3_bucket" "archive" {
  #checkov:skip=CKV_AWS_18:access logging of the archive would need a second bucket; CloudTrail data events are the place for it
  #checkov:skip=CKV_AWS_144:cross-region replication is a disaster-recovery choice left to the operator
  #checkov:skip=CKV2_AWS_62:nothing reacts to new archive objects; replay lists the prefix
  bucket_prefix = "${var.name}-archive-"
}

resource "aws_s3_bucket_versioning" "archive" {
  bucket = aws_s3_bucket.archive.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "archive" {
  bucket = aws_s3_bucket.archive.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.main.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "archive" {
  bucket                  = aws_s3_bucket.archive.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_lifecycle_configuration" "archive" {
  bucket = aws_s3_bucket.archive.id
  rule {
    id     = "cold-after-a-while"
    status = "Enabled"
    filter {}
    transition {
      days          = var.archive_expiry_days
      storage_class = "GLACIER_IR"
    }
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

resource "aws_kinesis_firehose_delivery_stream" "archive" {
  name        = "${var.name}-archive"
  destination = "extended_s3"

  kinesis_source_configuration {
    kinesis_stream_arn = aws_kinesis_stream.events.arn
    role_arn           = aws_iam_role.firehose.arn
  }

  extended_s3_configuration {
    role_arn            = aws_iam_role.firehose.arn
    bucket_arn          = aws_s3_bucket.archive.arn
    kms_key_arn         = aws_kms_key.main.arn
    prefix              = "events/!{timestamp:yyyy/MM/dd/HH}/"
    error_output_prefix = "errors/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd}/"
    buffering_size      = 64
    buffering_interval  = 300
    compression_format  = "GZIP"

    # One event per line: Kinesis records carry no delimiter of their own.
    processing_configuration {
      enabled = true
      processors {
        type = "AppendDelimiterToRecord"
      }
    }

    cloudwatch_logging_options {
      enabled         = true
      log_group_name  = aws_cloudwatch_log_group.firehose.name
      log_stream_name = "delivery"
    }
  }
}
