# Least privilege per service: each role may call only the actions its code calls (the adapters
# in streams/ and projections/; tests/infra/test_terraform.py checks the lists against them), on
# fanline's own stream, tables and key.

locals {
  kms_data = ["kms:Decrypt", "kms:GenerateDataKey"]
  # streams/kinesis_log.py: append (PutRecords), shards (ListShards), readiness (DescribeStreamSummary).
  kinesis_write = ["kinesis:PutRecords", "kinesis:ListShards", "kinesis:DescribeStreamSummary"]
  # streams/kinesis_log.py readers and streams/consumer.py.
  kinesis_read = [
    "kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:ListShards", "kinesis:DescribeStreamSummary",
  ]
  # projections/dynamodb_store.py (reads), projections/dynamodb_accounts.py (accounts, idempotency).
  dynamodb_api = [
    "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
    "dynamodb:Query", "dynamodb:Scan", "dynamodb:BatchGetItem", "dynamodb:DescribeTable",
  ]
  # projections/dynamodb_store.py (apply, put_dead_letter) and streams/dynamodb_leases.py (leases).
  # No DeleteItem: the store's deletes go through BatchWriteItem; removing dead letters is an
  # operator's job, with the operator's credentials.
  dynamodb_processor = [
    "dynamodb:PutItem", "dynamodb:UpdateItem",
    "dynamodb:Query", "dynamodb:Scan", "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem",
    "dynamodb:DescribeTable",
  ]
  # The Lambda path folds with the same store; its leases are the event source mapping's.
  dynamodb_lambda = [
    "dynamodb:PutItem", "dynamodb:Query", "dynamodb:Scan",
    "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:DescribeTable",
  ]
  # What Lambda's Kinesis event source mapping itself calls with the function's role. The function
  # uses GetShardIterator and GetRecords too: after a version switch it reads the records the new
  # version lacks (processors/lambda_handler.py, GapFillingHandler).
  kinesis_event_source = [
    "kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetRecords",
    "kinesis:GetShardIterator", "kinesis:ListShards", "kinesis:ListStreams",
  ]
  # `fanline replay` (the operator's policy below): reads of the live tables, and the versions'
  # tables made, waited for and dropped (fanline/versions.py).
  dynamodb_replay_read   = ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:DescribeTable"]
  dynamodb_replay_tables = ["dynamodb:CreateTable", "dynamodb:DeleteTable"]
  tables_and_indexes     = concat(local.table_arns, local.table_index_arns)
  # The tables of the versions `fanline replay` builds (<prefix>r1-<table>, ...; tables.tf.json),
  # by name pattern: they do not exist when Terraform runs. fanline/versions.py's
  # open_store_version and open_leases_version create a version's tables whenever they open one
  # that is not the first, on AWS too (CreateTable of an existing table is ResourceInUse, which
  # they accept, but only with the right to ask), so each task may create those tables, no others.
  version_tables_and_indexes = concat(local.version_table_arns, local.version_table_index_arns)
  dynamodb_version_create    = ["dynamodb:CreateTable"]
  # The version pointer (projections/dynamodb_versions.py): the tasks read it, `fanline replay` writes it.
  dynamodb_pointer_read = ["dynamodb:GetItem"]
  # streams/s3_archive.py, the processors' archiver (FANLINE_ARCHIVE_BUCKET, under archive/ in the
  # bucket Firehose writes under events/): the objects and the listing of its own prefix.
  archive_prefix     = "archive/"
  s3_archive_objects = ["s3:GetObject", "s3:PutObject"]
  s3_archive_list    = ["s3:ListBucket"]
}

data "aws_iam_policy_document" "ecs_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

# --- the task execution role: pull the image, write logs, read the signing secret ------------

resource "aws_iam_role" "execution" {
  name               = "${var.name}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid = "EcrLogin"
    #checkov:skip=CKV_AWS_356:ecr:GetAuthorizationToken has no resource-level permissions
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }
  statement {
    sid       = "EcrPull"
    actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
    resources = [aws_ecr_repository.fanline.arn]
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.api.arn}:*", "${aws_cloudwatch_log_group.processor.arn}:*"]
  }
  statement {
    sid       = "Secret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.signing.arn]
  }
  statement {
    sid       = "Key"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.main.arn]
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "pull-log-secret"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# --- the API task: append events, read projections, own the account tables -----------------

resource "aws_iam_role" "api" {
  name               = "${var.name}-api"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
}

data "aws_iam_policy_document" "api" {
  statement {
    sid       = "Stream"
    actions   = local.kinesis_write
    resources = [aws_kinesis_stream.events.arn]
  }
  statement {
    sid       = "Tables"
    actions   = local.dynamodb_api
    resources = local.tables_and_indexes
  }
  statement {
    sid       = "VersionTables"
    actions   = concat(local.dynamodb_api, local.dynamodb_version_create)
    resources = local.version_tables_and_indexes
  }
  statement {
    sid       = "Pointer"
    actions   = local.dynamodb_pointer_read
    resources = [local.pointer_table_arn]
  }
  statement {
    sid       = "Key"
    actions   = local.kms_data
    resources = [aws_kms_key.main.arn]
  }
}

resource "aws_iam_role_policy" "api" {
  name   = "stream-and-tables"
  role   = aws_iam_role.api.id
  policy = data.aws_iam_policy_document.api.json
}

# --- the processor task: read the stream, hold shard leases, write projections ---------------

resource "aws_iam_role" "processor" {
  name               = "${var.name}-processor"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
}

data "aws_iam_policy_document" "processor" {
  statement {
    sid       = "Stream"
    actions   = local.kinesis_read
    resources = [aws_kinesis_stream.events.arn]
  }
  statement {
    sid       = "Tables"
    actions   = local.dynamodb_processor
    resources = local.tables_and_indexes
  }
  statement {
    sid       = "VersionTables"
    actions   = concat(local.dynamodb_processor, local.dynamodb_version_create)
    resources = local.version_tables_and_indexes
  }
  statement {
    sid       = "Pointer"
    actions   = local.dynamodb_pointer_read
    resources = [local.pointer_table_arn]
  }
  statement {
    sid       = "Archive"
    actions   = local.s3_archive_objects
    resources = ["${aws_s3_bucket.archive.arn}/${local.archive_prefix}*"]
  }
  statement {
    sid       = "ArchiveList"
    actions   = local.s3_archive_list
    resources = [aws_s3_bucket.archive.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.archive_prefix}*"]
    }
  }
  statement {
    sid       = "Key"
    actions   = local.kms_data
    resources = [aws_kms_key.main.arn]
  }
}

resource "aws_iam_role_policy" "processor" {
  name   = "stream-and-tables"
  role   = aws_iam_role.processor.id
  policy = data.aws_iam_policy_document.processor.json
}

# --- the Lambda processor ----------------------------------------------------------------------

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "lambda" {
  count              = var.processor_runtime == "lambda" ? 1 : 0
  name               = "${var.name}-lambda-processor"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

data "aws_iam_policy_document" "lambda" {
  statement {
    sid       = "Stream"
    actions   = local.kinesis_event_source
    resources = [aws_kinesis_stream.events.arn]
  }
  statement {
    sid       = "Tables"
    actions   = local.dynamodb_lambda
    resources = local.tables_and_indexes
  }
  statement {
    sid       = "VersionTables"
    actions   = concat(local.dynamodb_lambda, local.dynamodb_version_create)
    resources = local.version_tables_and_indexes
  }
  statement {
    sid       = "Pointer"
    actions   = local.dynamodb_pointer_read
    resources = [local.pointer_table_arn]
  }
  statement {
    sid       = "Key"
    actions   = local.kms_data
    resources = [aws_kms_key.main.arn]
  }
  statement {
    sid       = "OnFailure"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.lambda_failures.arn]
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.lambda.arn}:*"]
  }
  statement {
    sid = "VpcNetworkInterfaces"
    #checkov:skip=CKV_AWS_111:these EC2 network-interface actions have no resource-level permissions (AWSLambdaVPCAccessExecutionRole grants the same)
    #checkov:skip=CKV_AWS_356:same: EC2 network-interface actions need resource "*"
    actions = [
      "ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DeleteNetworkInterface",
      "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses",
    ]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "lambda" {
  count  = var.processor_runtime == "lambda" ? 1 : 0
  name   = "stream-tables-queue"
  role   = aws_iam_role.lambda[0].id
  policy = data.aws_iam_policy_document.lambda.json
}

# --- `fanline replay`: a policy for the operator who runs it (attached to nothing here) ----------
# The replay runs from an operator's machine or a one-off task, with the operator's credentials:
# attach this policy (output replay_policy_arn) to the operator's role. It builds a version's
# tables (create, fill, seed its leases), reads the live ones (--verify), moves the pointer,
# drops old versions (--drop-old), and reads the stream and the archiver's objects.

data "aws_iam_policy_document" "replay" {
  statement {
    sid       = "Stream"
    actions   = local.kinesis_read
    resources = [aws_kinesis_stream.events.arn]
  }
  statement {
    sid       = "LiveTables"
    actions   = local.dynamodb_replay_read
    resources = local.tables_and_indexes
  }
  statement {
    sid       = "VersionTables"
    actions   = concat(local.dynamodb_processor, local.dynamodb_replay_read, local.dynamodb_replay_tables)
    resources = local.version_tables_and_indexes
  }
  statement {
    sid       = "Pointer"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DescribeTable"]
    resources = [local.pointer_table_arn]
  }
  statement {
    sid       = "Archive"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.archive.arn}/${local.archive_prefix}*"]
  }
  statement {
    sid       = "ArchiveList"
    actions   = local.s3_archive_list
    resources = [aws_s3_bucket.archive.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.archive_prefix}*"]
    }
  }
  statement {
    sid       = "Key"
    actions   = local.kms_data
    resources = [aws_kms_key.main.arn]
  }
}

resource "aws_iam_policy" "replay" {
  name        = "${var.name}-replay"
  description = "What fanline replay needs: attach to the operator who runs it."
  policy      = data.aws_iam_policy_document.replay.json
}

# --- Firehose: read the stream, write the archive -----------------------------------------------

data "aws_iam_policy_document" "firehose_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["firehose.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "sts:ExternalId"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "firehose" {
  name               = "${var.name}-firehose"
  assume_role_policy = data.aws_iam_policy_document.firehose_assume.json
}

data "aws_iam_policy_document" "firehose" {
  statement {
    sid       = "Stream"
    actions   = ["kinesis:DescribeStream", "kinesis:GetShardIterator", "kinesis:GetRecords", "kinesis:ListShards"]
    resources = [aws_kinesis_stream.events.arn]
  }
  statement {
    sid = "Archive"
    actions = [
      "s3:AbortMultipartUpload", "s3:GetBucketLocation", "s3:GetObject", "s3:ListBucket",
      "s3:ListBucketMultipartUploads", "s3:PutObject",
    ]
    resources = [aws_s3_bucket.archive.arn, "${aws_s3_bucket.archive.arn}/*"]
  }
  statement {
    sid       = "Key"
    actions   = local.kms_data
    resources = [aws_kms_key.main.arn]
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.firehose.arn}:*"]
  }
}

resource "aws_iam_role_policy" "firehose" {
  name   = "stream-to-archive"
  role   = aws_iam_role.firehose.id
  policy = data.aws_iam_policy_document.firehose.json
}

# --- VPC flow logs --------------------------------------------------------------------------------

data "aws_iam_policy_document" "flow_log_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "flow_log" {
  name               = "${var.name}-flow-log"
  assume_role_policy = data.aws_iam_policy_document.flow_log_assume.json
}

data "aws_iam_policy_document" "flow_log" {
  statement {
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${aws_cloudwatch_log_group.flow.arn}:*"]
  }
}

resource "aws_iam_role_policy" "flow_log" {
  name   = "write-flow-logs"
  role   = aws_iam_role.flow_log.id
  policy = data.aws_iam_policy_document.flow_log.json
}
