"""The survey: which dynamically allocated kernel objects want a read-only direct map.

Dave Hansen's review question on the "make persistent huge zero folio read-only" RFC was whether the huge
zero folio is a special snowflake.  :mod:`rofolio.survey.catalogue` answers it with validated data: a
catalogue of candidates (``candidates.toml``), each with its allocation sites in the Linux 7.2 tree, how it
is allocated, how many exist and how big (every figure cited or measured), its lifetime facts, and the
lifetime class those facts put it in (fits model 2, needs model 1, or neither), plus the relatives that
leave the direct map instead of becoming read-only.
"""
