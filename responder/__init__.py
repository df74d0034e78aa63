"""healthdns responder role."""
