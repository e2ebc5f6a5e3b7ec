"""The seed's "your app", in one Django app: the three patterns of
``seed-signal-vs-polling`` (polling, signal, payment with timeout) played against the real
``/v1`` API of the same project.
"""
