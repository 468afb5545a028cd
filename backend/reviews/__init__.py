"""Human review: a queue of low-confidence results, and corrections that teach the classifier.

policy.py decides which results a person should check, service.py keeps the queue and records
decisions (each one a labelled example), training.py retrains in the background.
"""
