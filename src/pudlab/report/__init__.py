"""What a run leaves for people: figures (all matplotlib lives here) and the report document."""
