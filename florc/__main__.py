from florc.cli import main

main()
