# processor_runtime = "lambda": the same image runs processors.lambda_handler behind a Kinesis
# event source mapping instead of the ECS processor service. Lambda keeps the shard positions;
# a batch's failures are reported per record (ReportBatchItemFailures), the batch is bisected on
# a function error, and what still fails after the retries is described on an SQS queue.

resource "aws_sqs_queue" "lambda_failures" {
  name                      = "${var.name}-lambda-failures"
  kms_master_key_id         = aws_kms_key.main.arn
  message_retention_seconds = 1209600 # the maximum, 14 days: time to replay the shard positions it names
}

resource "aws_lambda_function" "processor" {
  #checkov:skip=CKV_AWS_116:a Kinesis-triggered function's failures go to the event source mapping's on-failure queue, not a function DLQ
  #checkov:skip=CKV_AWS_272:code signing does not apply to container images (they are verified by digest in ECR)
  #checkov:skip=CKV_AWS_50:X-Ray tracing is optional; the processor exports its own metrics
  count         = var.processor_runtime == "lambda" ? 1 : 0
  function_name = "${var.name}-processor"
  role          = aws_iam_role.lambda[0].arn
  package_type  = "Image"
  # Lambda takes single-architecture images only: the README builds this tag apart.
  image_uri     = "${aws_ecr_repository.fanline.repository_url}:${var.image_tag}-lambda"
  architectures = [lower(var.cpu_architecture) == "arm64" ? "arm64" : "x86_64"]
  memory_size   = var.processor_memory
  timeout       = 300
  kms_key_arn   = aws_kms_key.main.arn
  # One invocation per shard at a time (parallelization factor 1) needs at most shard_count.
  reserved_concurrent_executions = var.shard_count

  # The image's entrypoint is `fanline`; Lambda runs the runtime interface client instead.
  image_config {
    entry_point = ["python", "-m", "awslambdaric"]
    command     = ["fanline.aws_lambda.handler"]
  }

  environment {
    variables = merge(local.fanline_environment, {
      FANLINE_DATA_DIR = "/tmp/fanline" # Lambda's only writable directory
    })
  }

  vpc_config {
    subnet_ids         = aws_subnet.private[*].id
    security_group_ids = [aws_security_group.tasks.id]
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.lambda.name
  }

  depends_on = [aws_iam_role_policy.lambda]
}

resource "aws_lambda_event_source_mapping" "processor" {
  count             = var.processor_runtime == "lambda" ? 1 : 0
  event_source_arn  = aws_kinesis_stream.events.arn
  function_name     = aws_lambda_function.processor[0].arn
  starting_position = "TRIM_HORIZON"
  batch_size        = 500
  # Events of one shard must be folded in order: one batch per shard at a time.
  parallelization_factor             = 1
  maximum_batching_window_in_seconds = 1
  function_response_types            = ["ReportBatchItemFailures"]
  bisect_batch_on_function_error     = true
  maximum_retry_attempts             = 10
  maximum_record_age_in_seconds      = 86400

  destination_config {
    on_failure {
      destination_arn = aws_sqs_queue.lambda_failures.arn
    }
  }
}
