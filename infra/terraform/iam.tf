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
  # What Lambda's Kinesis event source mapping itself calls with the function's role.
  kinesis_event_source = [
    "kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetRecords",
    "kinesis:GetShardIterator", "kinesis:ListShards", "kinesis:ListStreams",
  ]
  tables_and_indexes = concat(local.table_arns, local.table_index_arns)
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
