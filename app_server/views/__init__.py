"""HTTP and websocket endpoints; each module serves one kind of URL."""
