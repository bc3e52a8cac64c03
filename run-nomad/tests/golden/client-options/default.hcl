# Nomad agent configuration, written by run-nomad from this VM's Azure instance metadata.
# run-nomad rewrites this file whenever it runs: change its flags, not this file.

datacenter = "dc1"
region     = "europe"
name       = "5f3c1e2a-7b6d-4c21-9e8f-0a1b2c3d4e5f"
bind_addr  = "0.0.0.0"
data_dir   = "/opt/nomad/data"

advertise {
  http = "10.10.1.6"
  rpc  = "10.10.1.6"
  serf = "10.10.1.6"
}

client {
  enabled = true
  node_class = "web"
  node_pool = "frontend"

  server_join {
    retry_join = [
      "provider=azure resource_group=nomad-prod-rg vm_scale_set=nomad-servers subscription_id=0b1f6471-1bf0-4dda-aec3-111122223333",
    ]
  }

  meta {
    "rack" = "r1"
    "team" = "payments"
  }
}
