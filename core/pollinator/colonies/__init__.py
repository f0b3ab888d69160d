"""Everything that speaks the Colonies protocol: keys, wire models, the RPC client."""
