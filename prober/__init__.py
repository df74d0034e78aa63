"""healthdns prober role."""
