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
leave_on_interrupt = false
leave_on_terminate = true

advertise {
  http = "10.10.1.6"
  rpc  = "10.10.1.6"
  serf = "10.10.1.6"
}

client {
  enabled = true

  server_join {
    retry_join = [
      "provider=azure resource_group=nomad-shared-rg vm_scale_set=nomad-servers subscription_id=0b1f6471-1bf0-4dda-aec3-111122223333",
    ]
  }

  meta {
    "azure.zone" = "2"
    "azure.fault_domain" = "0"
    "azure.vm_size" = "Standard_D2ds_v5"
  }

  # On SIGTERM (leave_on_terminate) the client drains itself before it exits, within the
  # scale set's terminate notice; the service's own stop signal (SIGINT) does not drain.
  drain_on_shutdown {
    deadline           = "4m15s"
    force              = false
    ignore_system_jobs = false
  }
}
