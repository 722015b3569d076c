"""Shared code of supabase-waituntil: settings, the message contract, adapters and logic."""
