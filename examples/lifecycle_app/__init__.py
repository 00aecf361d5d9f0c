"""A directory app that uses every file Bokeh's directory format knows (see README.md here)."""
