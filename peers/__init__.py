"""healthdns peers role."""
