-- Rows `make dev` starts with (like `supabase db reset`): applied once, when its database is
-- created. Tests and `make demo` start from empty tables. No webhook fires for these rows:
-- the webhook triggers are created after the seed, and `make dev` fills the cache by a resync.
insert into public.authors (slug, name, bio) values
  ('ada', 'Ada Lovelace', 'Wrote the first program.'),
  ('grace', 'Grace Hopper', 'Made the first compiler.'),
  ('alan', 'Alan Turing', null);

insert into public.articles (title, body, published, rating, tags, meta) values
  ('Hello, Supabase', 'The first article.', true, 4.5, '{welcome}', '{"lang": "en"}'),
  ('A draft', 'Not published yet.', false, null, '{}', null),
  ('Crème brûlée — 東京', 'Unicode survives the trip.', true, 3.25, '{food,travel}',
   '{"lang": "fr", "words": 120}');
