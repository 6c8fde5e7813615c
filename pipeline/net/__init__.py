"""Talking to remote hosts: HTTP downloads, retries, the address policy and the guard proxy."""
