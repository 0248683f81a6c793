# One image (Dockerfile), two services: `fanline api` behind the load balancer and
# `fanline process` (shard leases in DynamoDB, at most one task per shard).

resource "aws_ecr_repository" "fanline" {
  name                 = var.name
  image_tag_mutability = "IMMUTABLE"
  # Images are rebuilt from git: `terraform destroy` may delete them with the repository.
  force_delete = true

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.main.arn
  }
}

resource "aws_ecr_lifecycle_policy" "fanline" {
  repository = aws_ecr_repository.fanline.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "keep the newest 30 images"
      selection    = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = 30 }
      action       = { type = "expire" }
    }]
  })
}

resource "aws_ecs_cluster" "main" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

# The JWT signing secret (FANLINE_SECRET), generated once and handed to the tasks by ECS.
resource "random_password" "signing" {
  length  = 48
  special = false
}

resource "aws_secretsmanager_secret" "signing" {
  #checkov:skip=CKV2_AWS_57:rotating the signing secret logs every user out; rotate by hand (new version, redeploy)
  name_prefix = "${var.name}-signing-"
  kms_key_id  = aws_kms_key.main.arn
}

resource "aws_secretsmanager_secret_version" "signing" {
  secret_id     = aws_secretsmanager_secret.signing.id
  secret_string = random_password.signing.result
}

locals {
  image = "${aws_ecr_repository.fanline.repository_url}:${var.image_tag}"

  # Every name here is a field of fanline.settings.Settings (checked by tests/infra).
  fanline_environment = {
    FANLINE_BACKEND             = "aws"
    FANLINE_REGION              = var.region
    FANLINE_STREAM_NAME         = local.stream_name
    FANLINE_TABLE_PREFIX        = local.table_prefix
    FANLINE_SHARDS              = tostring(var.shard_count)
    FANLINE_STRATEGY            = var.strategy
    FANLINE_CELEBRITY_THRESHOLD = tostring(var.celebrity_threshold)
    FANLINE_TIMELINE_CAP        = tostring(var.timeline_cap)
    FANLINE_DATA_DIR            = "/data"
    FANLINE_RATE_LIMIT_PER_S    = tostring(var.rate_limit_per_s)
    # The processors' archiver writes what `fanline replay` reads (streams/s3_archive.py, under
    # archive/); Firehose's copy beside it (events/) is the raw one, whatever the processor runtime.
    FANLINE_ARCHIVE_BUCKET = aws_s3_bucket.archive.id
    # The graph projection stays off on AWS: no Neptune here, and no graph-leases table.
    FANLINE_GRAPH = "off"
  }
  task_environment = [for name, value in local.fanline_environment : { name = name, value = value }]
  task_secrets     = [{ name = "FANLINE_SECRET", valueFrom = aws_secretsmanager_secret.signing.arn }]

  # The root filesystem is read-only; the data directory is the task's scratch volume.
  task_mounts = [{ sourceVolume = "data", containerPath = "/data", readOnly = false }]
}

resource "aws_ecs_task_definition" "api" {
  family                   = "${var.name}-api"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.api_cpu
  memory                   = var.api_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.api.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  volume {
    name = "data"
  }

  container_definitions = jsonencode([{
    name                   = "api"
    image                  = local.image
    essential              = true
    command                = ["api", "--host", "0.0.0.0", "--port", "8080"]
    portMappings           = [{ containerPort = 8080, protocol = "tcp" }]
    environment            = local.task_environment
    secrets                = local.task_secrets
    readonlyRootFilesystem = true
    mountPoints            = local.task_mounts
    healthCheck = {
      command     = ["CMD", "python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz')"]
      interval    = 15
      timeout     = 5
      retries     = 3
      startPeriod = 20
    }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.api.name
        awslogs-region        = var.region
        awslogs-stream-prefix = "api"
      }
    }
  }])
}

resource "aws_ecs_task_definition" "processor" {
  family                   = "${var.name}-processor"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.processor_cpu
  memory                   = var.processor_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.processor.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  volume {
    name = "data"
  }

  container_definitions = jsonencode([{
    name                   = "processor"
    image                  = local.image
    essential              = true
    command                = ["process"]
    environment            = local.task_environment
    secrets                = local.task_secrets
    readonlyRootFilesystem = true
    mountPoints            = local.task_mounts
    # SIGTERM releases the shard leases; give the last batch time to become durable first.
    stopTimeout = 60
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.processor.name
        awslogs-region        = var.region
        awslogs-stream-prefix = "processor"
      }
    }
  }])
}

resource "aws_ecs_service" "api" {
  name            = "${var.name}-api"
  cluster         = aws_ecs_cluster.main.id
  task_definition = aws_ecs_task_definition.api.arn
  desired_count   = var.api_min_tasks
  launch_type     = "FARGATE"

  network_configuration {
    subnets          = aws_subnet.private[*].id
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.api.arn
    container_name   = "api"
    container_port   = 8080
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  # Autoscaling owns the task count after the first apply.
  lifecycle {
    ignore_changes = [desired_count]
  }

  depends_on = [aws_lb_listener.http]
}

resource "aws_ecs_service" "processor" {
  count           = var.processor_runtime == "ecs" ? 1 : 0
  name            = "${var.name}-processor"
  cluster         = aws_ecs_cluster.main.id
  task_definition = aws_ecs_task_definition.processor.arn
  desired_count   = var.processor_min_tasks
  launch_type     = "FARGATE"

  network_configuration {
    subnets          = aws_subnet.private[*].id
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  lifecycle {
    ignore_changes = [desired_count]
  }
}

# --- autoscaling ----------------------------------------------------------------------------------

resource "aws_appautoscaling_target" "api" {
  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${aws_ecs_cluster.main.name}/${aws_ecs_service.api.name}"
  min_capacity       = var.api_min_tasks
  max_capacity       = var.api_max_tasks
}

resource "aws_appautoscaling_policy" "api_cpu" {
  name               = "${var.name}-api-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.api.service_namespace
  scalable_dimension = aws_appautoscaling_target.api.scalable_dimension
  resource_id        = aws_appautoscaling_target.api.resource_id

  target_tracking_scaling_policy_configuration {
    target_value = 60
    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

resource "aws_appautoscaling_policy" "api_requests" {
  name               = "${var.name}-api-requests"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.api.service_namespace
  scalable_dimension = aws_appautoscaling_target.api.scalable_dimension
  resource_id        = aws_appautoscaling_target.api.resource_id

  target_tracking_scaling_policy_configuration {
    target_value = var.api_requests_per_task
    predefined_metric_specification {
      predefined_metric_type = "ALBRequestCountPerTarget"
      resource_label         = "${aws_lb.api.arn_suffix}/${aws_lb_target_group.api.arn_suffix}"
    }
  }
}

# Processors scale on how far behind the stream they are, up to one task per shard (a task
# without a lease has nothing to do).
resource "aws_appautoscaling_target" "processor" {
  count              = var.processor_runtime == "ecs" ? 1 : 0
  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${aws_ecs_cluster.main.name}/${aws_ecs_service.processor[0].name}"
  min_capacity       = var.processor_min_tasks
  max_capacity       = var.shard_count
}

resource "aws_appautoscaling_policy" "processor_lag" {
  count              = var.processor_runtime == "ecs" ? 1 : 0
  name               = "${var.name}-processor-iterator-age"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.processor[0].service_namespace
  scalable_dimension = aws_appautoscaling_target.processor[0].scalable_dimension
  resource_id        = aws_appautoscaling_target.processor[0].resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.iterator_age_target_ms
    scale_in_cooldown  = 300
    scale_out_cooldown = 60
    customized_metric_specification {
      namespace   = "AWS/Kinesis"
      metric_name = "GetRecords.IteratorAgeMilliseconds"
      statistic   = "Maximum"
      dimensions {
        name  = "StreamName"
        value = aws_kinesis_stream.events.name
      }
    }
  }
}
