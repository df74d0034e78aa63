"""healthdns signer role."""
