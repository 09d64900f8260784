"""The anime library: series and episodes known from provider sites (aniworld.to, s.to), what
lies on disk, what is missing, and the ``anime-episode`` jobs that fill the gaps (docs/anime.md).
"""
