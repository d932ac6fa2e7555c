"""The crowdsource server: Tornado handlers over the service."""
