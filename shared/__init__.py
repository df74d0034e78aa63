"""healthdns shared role."""
