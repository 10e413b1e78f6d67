"""Everything in the engine that exists only for speed.

The readable engine (:mod:`gradsight.engine`) never imports this package. :func:`gradsight.fit`
chooses, once per call, between the plain step of :mod:`gradsight.engine.step` and the fast
step of :mod:`.step` here; the tests hold the fast step to the plain one's numbers.
"""
