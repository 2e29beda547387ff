"""firewall-console: where the human sees pending actions and their codes, and denies."""
