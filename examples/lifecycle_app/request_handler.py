def process_request(request):
    """Runs for each page request; the dict goes into the session token's payload."""
    name = request.arguments.get("name", [b"world"])[0].decode()
    return {"greeting": f"hello {name}", "agent": request.headers.get("User-Agent", "")}
