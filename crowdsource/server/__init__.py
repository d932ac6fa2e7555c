"""The crowdsource server: Tornado handlers over one manager per resource."""
