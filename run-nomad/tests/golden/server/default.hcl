# Nomad agent configuration, written by run-nomad from this VM's Azure instance metadata.
# run-nomad rewrites this file whenever it runs: change its flags, not this file.

datacenter = "eastus2"
region     = "eastus2"
name       = "5f3c1e2a-7b6d-4c21-9e8f-0a1b2c3d4e5f"
bind_addr  = "0.0.0.0"
data_dir   = "/opt/nomad/data"

# Scale-set servers that stop are deleted or rebooted: they leave the peer set, and rejoin
# after a reboot (rejoin_after_leave). Clients leave only on SIGTERM, which drains them when
# they have drain_on_shutdown (Nomad 1.5.4+); the service stops Nomad with SIGINT.
leave_on_interrupt = true
leave_on_terminate = true

advertise {
  http = "10.10.1.6"
  rpc  = "10.10.1.6"
  serf = "10.10.1.6"
}

server {
  enabled          = true
  bootstrap_expect = 3
  rejoin_after_leave = true
}

# Remove the servers that scale-set replacements leave behind, but never below the
# cluster's size (https://developer.hashicorp.com/nomad/docs/configuration/autopilot).
autopilot {
  cleanup_dead_servers      = true
  last_contact_threshold    = "200ms"
  max_trailing_logs         = 250
  server_stabilization_time = "10s"
  min_quorum                = 3
}

consul {
  address = "127.0.0.1:8500"
}
