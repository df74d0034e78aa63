"""healthdns supervisor role."""
