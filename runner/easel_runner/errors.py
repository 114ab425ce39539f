"""The error a request ends with, carrying its protocol error code."""


class RunnerError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message
