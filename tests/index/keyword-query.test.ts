import { keywordQuery, koreanStem } from '@confluence-bot/index'
import t from 'tap'

// Korean words in a query also search for their stems; everything else is searched as written.

t.test('particles and endings come off; a short word stays whole', async (t) => {
  t.equal(koreanStem('서버를'), '서버')
  t.equal(koreanStem('설치하려면'), '설치')
  t.equal(koreanStem('클러스터에서'), '클러스터')
  t.equal(koreanStem('사용자가'), '사용자')
  t.equal(koreanStem('평가'), '평가', 'two syllables: no cut')
  t.equal(koreanStem('속도'), '속도')
  t.equal(koreanStem('데이터'), '데이터', 'nothing glued')
})

t.test('the query keeps its words and gains the stems it lacks', async (t) => {
  t.equal(keywordQuery('How do I install the agent?'), 'How do I install the agent?')
  t.equal(keywordQuery('LDAP 서버를 IdP로 연동하려면?'), 'LDAP 서버를 IdP로 연동하려면? 서버 연동')
  t.equal(keywordQuery('서버 서버를'), '서버 서버를', 'a stem already in the query is not repeated')
  t.equal(keywordQuery(''), '')
})
