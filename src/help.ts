import {Help} from '@oclif/core'

export default class CleanroomHelp extends Help {}
