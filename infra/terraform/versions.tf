terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.60"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project = var.name
    }
  }
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  # The names the code expects by default (fanline.settings.Settings): stream "fanline-events",
  # tables "fanline-<spec name>". Both are passed to the tasks as FANLINE_* variables anyway.
  stream_name  = "${var.name}-events"
  table_prefix = "${var.name}-"
  # Named, not looked up: a looked-up list can grow when AWS adds a zone, and move the subnets.
  azs = [for suffix in var.availability_zone_suffixes : "${var.region}${suffix}"]
}
