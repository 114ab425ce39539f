"""The error a request ends with, carrying its protocol error code."""


class RunnerError(Exception):
    def __init__(self, code, message, field=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def frame(self, request_id):
        """The `error` frame that ends request `request_id`."""
        frame = {"type": "error", "id": request_id, "code": self.code, "message": self.message}
        if self.field is not None:
            frame["field"] = self.field
        return frame


def invalid_input(field, message):
    """A well-formed request whose `field` holds a value that cannot be used."""
    return RunnerError("invalid_input", message, field)
