"""The user's command, ``fmproto``: ``explain`` a prediction, ``report`` a pull request's changes."""
