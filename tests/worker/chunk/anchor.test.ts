import t from 'tap'
import { headingAnchor, headingText } from '../../../services/worker/src/chunk/index.ts'

t.test('cloud anchors: spaces become -, other characters are kept and URL-encoded', async (t) => {
  t.equal(headingAnchor('Getting started', 'My Page', 'cloud'), 'Getting-started')
  t.equal(headingAnchor('API & SDKs', 'My Page', 'cloud'), 'API-%26-SDKs')
  t.equal(headingAnchor('**Bold** [link](x)', 'My Page', 'cloud'), 'Bold-link')
  t.equal(headingAnchor('What is `npm ci`?', 'My Page', 'cloud'), 'What-is-npm-ci%3F')
  t.equal(
    headingAnchor('설치 가이드', 'My Page', 'cloud'),
    '%EC%84%A4%EC%B9%98-%EA%B0%80%EC%9D%B4%EB%93%9C',
  )
})

t.test('server anchors: <title>-<heading> without whitespace, URL-encoded', async (t) => {
  t.equal(headingAnchor('Getting Started', 'My Page', 'server'), 'MyPage-GettingStarted')
  t.equal(headingAnchor('API & SDKs', 'My Page', 'server'), 'MyPage-API%26SDKs')
  t.equal(headingAnchor('**Bold**  [link](x)', 'My  Page', 'server'), 'MyPage-Boldlink')
  t.equal(
    headingAnchor('설치 가이드', '개발 환경', 'server'),
    '%EA%B0%9C%EB%B0%9C%ED%99%98%EA%B2%BD-%EC%84%A4%EC%B9%98%EA%B0%80%EC%9D%B4%EB%93%9C',
  )
})

t.test('heading text: markup stripped, escapes resolved, whitespace collapsed', async (t) => {
  t.equal(headingText('**Bold** [link](x)'), 'Bold link')
  t.equal(
    headingText('__Strong__ and *em* and _under_ and ~~gone~~'),
    'Strong and em and under and gone',
  )
  t.equal(headingText('snake_case_name stays'), 'snake_case_name stays')
  t.equal(headingText('`**kwargs` and `a_b_`'), '**kwargs and a_b_', 'code spans are literal')
  t.equal(headingText('1\\. Intro \\*not em\\*'), '1. Intro *not em*', 'backslash escapes')
  t.equal(headingText('![logo](logo.png) Logo [ref][1]'), 'logo Logo ref')
  t.equal(headingText('Line<br>break <span class="x">span</span>'), 'Linebreak span')
  t.equal(headingText('  spaced \t out  '), 'spaced out')
})
