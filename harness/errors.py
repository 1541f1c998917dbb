"""The one exception type for mistakes a user can fix (bad config, missing data, bad paths).

Entry points catch it, print its message as one line, and exit non-zero; anything else is a
bug and keeps its traceback.
"""


class UserError(Exception):
    """Something in the user's configuration or environment that they must change."""
