"""MLflow's registry searches, read to the end."""


def pages(search, **kwargs):
    """Every item of an MLflow search, page after page."""
    token = None
    while True:
        page = search(page_token=token, **kwargs)
        yield from page
        token = page.token
        if not token:
            return
