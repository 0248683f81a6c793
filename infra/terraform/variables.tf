variable "region" {
  description = "AWS region for everything."
  type        = string
  default     = "us-east-1"
}

variable "name" {
  description = "Prefix of every resource name; the stream is <name>-events, tables <name>-<table>."
  type        = string
  default     = "fanline"
}

variable "image_tag" {
  description = "Tag of the fanline image in the ECR repository (tags are immutable: use the git sha)."
  type        = string
}

variable "stream_mode" {
  description = "Kinesis capacity mode: PROVISIONED (shard_count shards) or ON_DEMAND."
  type        = string
  default     = "PROVISIONED"

  validation {
    condition     = contains(["PROVISIONED", "ON_DEMAND"], var.stream_mode)
    error_message = "stream_mode must be PROVISIONED or ON_DEMAND."
  }
}

variable "shard_count" {
  description = "Shards of a PROVISIONED stream; also the most processor tasks (one per shard at most)."
  type        = number
  default     = 4
}

variable "rate_limit_per_s" {
  description = "Requests per second per bearer token on /v1, bursts of twice that; 0 for no limit (FANLINE_RATE_LIMIT_PER_S)."
  type        = number
  default     = 100

  validation {
    condition     = var.rate_limit_per_s >= 0 && floor(var.rate_limit_per_s) == var.rate_limit_per_s
    error_message = "rate_limit_per_s is a whole number, 0 or more."
  }
}

variable "strategy" {
  description = "Fan-out strategy: push, pull or hybrid (FANLINE_STRATEGY)."
  type        = string
  default     = "hybrid"

  validation {
    condition     = contains(["push", "pull", "hybrid"], var.strategy)
    error_message = "strategy must be push, pull or hybrid."
  }
}

variable "celebrity_threshold" {
  description = "Followers at which an author is pulled at read time instead of pushed (FANLINE_CELEBRITY_THRESHOLD)."
  type        = number
  default     = 50000
}

variable "timeline_cap" {
  description = "Entries kept per pushed timeline (FANLINE_TIMELINE_CAP)."
  type        = number
  default     = 800
}

variable "processor_runtime" {
  description = "Where the processors run: ecs (a Fargate service with shard leases) or lambda (a Kinesis event source mapping)."
  type        = string
  default     = "ecs"

  validation {
    condition     = contains(["ecs", "lambda"], var.processor_runtime)
    error_message = "processor_runtime must be ecs or lambda."
  }
}

variable "api_cpu" {
  description = "CPU units of one API task (1024 = 1 vCPU)."
  type        = number
  default     = 512
}

variable "api_memory" {
  description = "Memory (MiB) of one API task."
  type        = number
  default     = 1024
}

variable "api_min_tasks" {
  description = "Fewest API tasks (two, in two availability zones)."
  type        = number
  default     = 2
}

variable "api_max_tasks" {
  description = "Most API tasks."
  type        = number
  default     = 10
}

variable "processor_cpu" {
  description = "CPU units of one processor task."
  type        = number
  default     = 512
}

variable "processor_memory" {
  description = "Memory (MiB) of one processor task, or of the Lambda function."
  type        = number
  default     = 1024
}

variable "processor_min_tasks" {
  description = "Fewest processor tasks (ECS runtime)."
  type        = number
  default     = 1
}

variable "iterator_age_target_ms" {
  description = "Processor autoscaling keeps the stream's iterator age near this (ms)."
  type        = number
  default     = 30000
}

variable "iterator_age_alarm_ms" {
  description = "Alarm when the oldest unprocessed record is older than this (ms)."
  type        = number
  default     = 300000
}

variable "vpc_cidr" {
  description = "CIDR of the VPC (two public subnets for the ALB, two private ones for the tasks)."
  type        = string
  default     = "10.40.0.0/16"
}

variable "certificate_arn" {
  description = "ACM certificate for an HTTPS listener; empty serves plain HTTP on port 80 (trials only)."
  type        = string
  default     = ""
}

variable "alarm_email" {
  description = "Email subscribed to the alarm topic; empty subscribes nobody."
  type        = string
  default     = ""
}

variable "log_retention_days" {
  description = "Retention of the CloudWatch log groups."
  type        = number
  default     = 365
}

variable "archive_expiry_days" {
  description = "Archived events older than this are moved to Glacier (never deleted: replay needs them)."
  type        = number
  default     = 90
}

variable "cpu_architecture" {
  description = "X86_64 or ARM64 (Graviton, about 20 % cheaper); the image is built for both."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "api_requests_per_task" {
  description = "API autoscaling keeps the load balancer's requests per task per minute near this."
  type        = number
  default     = 3000
}

variable "availability_zone_suffixes" {
  description = "The two availability zones, as suffixes of the region (us-east-1 + a)."
  type        = list(string)
  default     = ["a", "b"]

  validation {
    condition     = length(var.availability_zone_suffixes) == 2
    error_message = "Give exactly two availability zones."
  }
}
