raise RuntimeError("this app is broken on purpose")
