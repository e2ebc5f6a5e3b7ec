"""The demo plays "your app", in one Django app: the three patterns of an HTTP task service
(polling, signal, payment with timeout) played against the real ``/v1`` API of the same
project.
"""
