resource "aws_lb" "api" {
  #checkov:skip=CKV_AWS_91:access logs need a second bucket with an ELB-writable policy; CloudWatch 5xx/latency metrics cover the trial deployment
  #checkov:skip=CKV_AWS_150:deletion protection would block `terraform destroy` of a trial deployment; set it by hand in production
  #checkov:skip=CKV2_AWS_20:port 80 redirects to HTTPS when certificate_arn is set; without one it is the trial's only listener
  #checkov:skip=CKV2_AWS_28:a WAF is a per-organisation choice (rules, cost); attach one with aws_wafv2_web_acl_association
  name                       = "${var.name}-api"
  load_balancer_type         = "application"
  internal                   = false
  security_groups            = [aws_security_group.alb.id]
  subnets                    = aws_subnet.public[*].id
  drop_invalid_header_fields = true
}

resource "aws_lb_target_group" "api" {
  #checkov:skip=CKV_AWS_378:TLS ends at the load balancer; from it to the tasks is plain HTTP inside the VPC's private subnets
  name                 = "${var.name}-api"
  port                 = 8080
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = aws_vpc.main.id
  deregistration_delay = 30

  # /readyz answers 200 only when the task reaches the stream and the tables.
  health_check {
    path                = "/readyz"
    matcher             = "200"
    interval            = 15
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

# Without a certificate: plain HTTP (trials). With one: HTTPS on 443 and a redirect on 80.
resource "aws_lb_listener" "http" {
  #checkov:skip=CKV_AWS_2:port 80 serves HTTP only when no certificate is given (trials); with one it redirects to HTTPS
  #checkov:skip=CKV_AWS_103:same listener: TLS applies to the HTTPS listener
  load_balancer_arn = aws_lb.api.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type             = var.certificate_arn == "" ? "forward" : "redirect"
    target_group_arn = var.certificate_arn == "" ? aws_lb_target_group.api.arn : null

    dynamic "redirect" {
      for_each = var.certificate_arn == "" ? [] : [1]
      content {
        port        = "443"
        protocol    = "HTTPS"
        status_code = "HTTP_301"
      }
    }
  }
}

resource "aws_lb_listener" "https" {
  count             = var.certificate_arn == "" ? 0 : 1
  load_balancer_arn = aws_lb.api.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.api.arn
  }
}
