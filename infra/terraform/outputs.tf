output "api_url" {
  description = "The API's base URL (the load balancer)."
  value       = "${var.certificate_arn == "" ? "http" : "https"}://${aws_lb.api.dns_name}"
}

output "ecr_repository_url" {
  description = "Push the fanline image here."
  value       = aws_ecr_repository.fanline.repository_url
}

output "stream_name" {
  value = aws_kinesis_stream.events.name
}

output "cluster_name" {
  value = aws_ecs_cluster.main.name
}

output "archive_bucket" {
  value = aws_s3_bucket.archive.bucket
}

output "lambda_failures_queue_url" {
  value = aws_sqs_queue.lambda_failures.url
}

output "replay_policy_arn" {
  description = "Attach to the operator who runs `fanline replay` (iam.tf)."
  value       = aws_iam_policy.replay.arn
}
