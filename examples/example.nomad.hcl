# A first job for a fresh cluster: a static web server on every client, using only what the
# baked image has (python3 from Ubuntu, Nomad's exec driver), so it runs without pulling images.
#
#   nomad job run -address=http://<load balancer address>:4646 examples/example.nomad.hcl
#   nomad job status -address=http://<load balancer address>:4646 example
job "example" {
  datacenters = ["*"]
  type        = "service"

  group "web" {
    count = 2

    network {
      port "http" {}
    }

    # Spread the two instances over different clients.
    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    task "server" {
      driver = "exec"

      config {
        command = "/usr/bin/python3"
        args    = ["-m", "http.server", "${NOMAD_PORT_http}", "--directory", "local"]
      }

      template {
        destination = "local/index.html"
        data        = "Hello from {{ env \"node.unique.name\" }}\n"
      }

      resources {
        cpu    = 50
        memory = 64
      }
    }
  }
}
