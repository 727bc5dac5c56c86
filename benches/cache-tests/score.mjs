// Score cache-tests results the way https://cache-tests.fyi does
// (test-engine/lib/results.mjs decides each result), for portcullis and
// for every implementation whose results the suite publishes.
//
//   node score.mjs SUITE_CHECKOUT PORTCULLIS_RESULTS.json
import fs from 'fs'
import path from 'path'
import { pathToFileURL } from 'url'

const [suite, ours] = process.argv.slice(2)
const load = (p) => import(pathToFileURL(path.join(suite, p)).href)
const { default: tests } = await load('tests/index.mjs')
const { determineTestResult, resultTypes } = await load('test-engine/lib/results.mjs')
const { default: index } = await load('results/index.mjs')

const names = Object.fromEntries(Object.entries(resultTypes).map(([k, v]) => [v[2], k]))
const ids = tests.flatMap(s => s.tests.map(t => t.id))

function score (results) {
  const counts = {}
  const byKind = {}
  for (const id of ids) {
    const kind = names[determineTestResult(tests, id, results)[2]]
    counts[kind] = (counts[kind] || 0) + 1
    ;(byKind[kind] = byKind[kind] || []).push(id)
  }
  return { counts, byKind }
}

const rows = [['portcullis', score(JSON.parse(fs.readFileSync(ours, 'utf8')))]]
for (const item of index) {
  const file = path.join(suite, 'results', item.file)
  if (!fs.existsSync(file) || item.type === 'browser') continue
  rows.push([item.name, score(JSON.parse(fs.readFileSync(file, 'utf8')))])
}
rows.sort((a, b) => (b[1].counts.pass || 0) - (a[1].counts.pass || 0))

const cols = ['pass', 'fail', 'optional_fail', 'yes', 'no', 'setup_fail', 'harness_fail', 'dependency_fail', 'retry', 'untested']
console.log(`${ids.length} tests\n`)
console.log(['implementation', ...cols].join('\t'))
for (const [name, s] of rows) {
  console.log([name, ...cols.map(c => s.counts[c] || 0)].join('\t'))
}
const mine = rows.find(r => r[0] === 'portcullis')[1]
for (const kind of ['fail', 'optional_fail', 'setup_fail', 'dependency_fail']) {
  const list = mine.byKind[kind] || []
  console.log(`\nportcullis ${kind} (${list.length}): ${list.join(', ') || 'none'}`)
}
