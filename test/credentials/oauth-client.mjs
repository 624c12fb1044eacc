// An OAuth client as an agent in a sandbox behaves: it keeps its tokens in
// ~/.fake/auth.json, refreshes them at the token endpoint and calls the API
// host, through the sandbox's proxy (HTTPS_PROXY), trusting what Node trusts
// (its roots plus NODE_EXTRA_CA_CERTS). Prints one JSON result.
import {readFileSync, writeFileSync, mkdirSync} from 'node:fs'
import {request as httpRequest} from 'node:http'
import {request as httpsRequest} from 'node:https'
import {connect} from 'node:tls'
import {homedir} from 'node:os'

const FILE = `${homedir()}/.fake/auth.json`
const proxy = new URL(process.env.HTTPS_PROXY)

function tunnel(host, port) {
  return new Promise((resolve, reject) => {
    const req = httpRequest({host: proxy.hostname, port: proxy.port, method: 'CONNECT', path: `${host}:${port}`})
    req.on('connect', (res, socket) => (res.statusCode === 200 ? resolve(socket) : reject(new Error(`CONNECT ${res.statusCode}`))))
    req.on('error', reject)
    req.end()
  })
}

async function call(host, port, method, path, headers = {}, body) {
  const socket = await tunnel(host, port)
  return new Promise((resolve) => {
    const req = httpsRequest({host, port, method, path, headers, createConnection: () => connect({socket, servername: host})}, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk) => (text += chunk))
      res.on('end', () => {
        let json
        try {
          json = JSON.parse(text)
        } catch {}
        resolve({status: res.statusCode, json, text})
      })
    })
    req.on('error', (error) => resolve({error: error.code ?? error.message}))
    req.end(body)
  })
}

const [mode, host, port, ...rest] = process.argv.slice(2)
const auth = () => JSON.parse(readFileSync(FILE, 'utf8'))
const save = (answer) => {
  const file = auth()
  file.tokens = {...file.tokens, access_token: answer.access_token, refresh_token: answer.refresh_token ?? file.tokens.refresh_token, id_token: answer.id_token ?? file.tokens.id_token}
  writeFileSync(FILE, JSON.stringify(file))
}
const refresh = async () => {
  const body = JSON.stringify({grant_type: 'refresh_token', refresh_token: auth().tokens.refresh_token, client_id: 'fake-client'})
  const answer = await call(host, port, 'POST', '/oauth/token', {'content-type': 'application/json'}, body)
  if (answer.status === 200 && answer.json) save(answer.json)
  return answer
}
const whoami = async () => call(host.replace('auth.', 'api.'), port, 'GET', '/api/whoami', {authorization: `Bearer ${auth().tokens.access_token}`})

switch (mode) {
  case 'refresh': {
    console.log(JSON.stringify(await refresh()))
    break
  }
  case 'whoami': {
    console.log(JSON.stringify(await whoami()))
    break
  }
  case 'loop': {
    const results = []
    for (let i = 0; i < Number(rest[0]); i++) {
      const refreshed = await refresh()
      const api = await whoami()
      results.push({refresh: refreshed.status ?? refreshed.error, api: api.status ?? api.error})
    }
    console.log(JSON.stringify(results))
    break
  }
  case 'code': {
    const answer = await call(host, port, 'POST', '/oauth/token', {'content-type': 'application/x-www-form-urlencoded'}, 'grant_type=authorization_code&code=abc&client_id=fake-client')
    if (answer.status === 200) {
      mkdirSync(`${homedir()}/.fake`, {recursive: true})
      writeFileSync(FILE, JSON.stringify({tokens: {}}))
      save(answer.json)
    }
    console.log(JSON.stringify(answer))
    break
  }
  case 'get': {
    const answer = await call(host, port, 'GET', rest[0] ?? '/')
    console.log(JSON.stringify({status: answer.status, error: answer.error}))
    break
  }
}
