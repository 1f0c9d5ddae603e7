"""Credentials and certificate rules shared by the server, bootstrap server and client."""
