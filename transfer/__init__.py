"""healthdns transfer role."""
