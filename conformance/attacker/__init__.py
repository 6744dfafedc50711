"""The attacker's side of the harness: what an adversary on the network path can see or do."""
