"""Posterior sampling of finite networks: samplers, vmapped checkpointed chains, diagnostics, step sizes."""
