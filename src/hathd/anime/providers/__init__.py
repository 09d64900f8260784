"""Provider sites: one module per site engine, behind
:class:`~hathd.anime.providers.base.Provider`."""
