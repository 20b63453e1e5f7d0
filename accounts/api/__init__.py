"""/api/auth/* (``auth``) and /api/keys (``keys``): thin DRF views over allauth's flows and
accounts' services; what they share is in ``base``, their response shapes in ``serializers``.
"""
