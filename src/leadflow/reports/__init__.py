"""Daily and weekly campaign reports by e-mail (HTML, plain text and a CSV attachment)."""
